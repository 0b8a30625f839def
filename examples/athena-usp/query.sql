-- The accommodations of the run date that have unique selling points, with their destination.
-- :date is the run date (awswrangler quotes it: params={"date": date}).
SELECT accommodation_id, locality_id AS destination_id
FROM accommodation
WHERE date = :date
  AND accommodation_id IN (SELECT accommodation_id FROM unique_selling_points WHERE date = :date)
